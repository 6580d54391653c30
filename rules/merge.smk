rule soup:
    input:
        base="results/{task}/pretrain/model",
        experts=soup_experts,
    output:
        directory("results/{task}/soups/{mix}"),
    params:
        kind=task_kind,
        settings=settings("merge"),
        weights=mix_weights,
    threads: resource("merge", "threads")
    resources:
        gpu=resource("merge", "gpu"),
        mem_mb=resource("merge", "mem_mb"),
        runtime=resource("merge", "runtime"),
        gpu_model=resource("merge", "gpu_model"),
    log:
        "logs/{task}/soups/{mix}.log",
    benchmark:
        "benchmarks/{task}/soups/{mix}.tsv"
    conda:
        conda_env
    script:
        "../scripts/merge.py"


# Baselines of the paper's captioning experiments (tasks list what they
# implement in BASELINES): prediction ensembling of two experts, and WiSE,
# an expert interpolated toward θ0 (θ0 is a member of the merge, weight 1 − α).
rule ensemble:
    input:
        base="results/{task}/pretrain/model",
        experts=soup_experts,
    output:
        directory("results/{task}/ensembles/{mix}"),
    params:
        kind=task_kind,
        settings=settings("merge"),
        weights=mix_weights,
        method="ensemble",
    threads: resource("merge", "threads")
    resources:
        gpu=resource("merge", "gpu"),
        mem_mb=resource("merge", "mem_mb"),
        runtime=resource("merge", "runtime"),
        gpu_model=resource("merge", "gpu_model"),
    log:
        "logs/{task}/ensembles/{mix}.log",
    conda:
        conda_env
    script:
        "../scripts/merge.py"


rule wise:
    input:
        base="results/{task}/pretrain/model",
        experts=wise_members,
    output:
        directory("results/{task}/wise/{mix}"),
    params:
        kind=task_kind,
        settings=settings("merge"),
        weights=wise_weights,
    threads: resource("merge", "threads")
    resources:
        gpu=resource("merge", "gpu"),
        mem_mb=resource("merge", "mem_mb"),
        runtime=resource("merge", "runtime"),
        gpu_model=resource("merge", "gpu_model"),
    log:
        "logs/{task}/wise/{mix}.log",
    benchmark:
        "benchmarks/{task}/wise/{mix}.tsv"
    conda:
        conda_env
    script:
        "../scripts/merge.py"
