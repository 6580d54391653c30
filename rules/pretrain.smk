rule pretrain:
    input:
        local=local_inputs("pretrain"),
    output:
        model=directory("results/{task}/pretrain/model"),
        metrics="results/{task}/pretrain/metrics.json",
    params:
        kind=task_kind,
        settings=settings("pretrain"),
        seed=SEED,
    threads: resource("pretrain", "threads")
    resources:
        gpu=resource("pretrain", "gpu"),
        mem_mb=resource("pretrain", "mem_mb"),
        runtime=resource("pretrain", "runtime"),
        gpu_model=resource("pretrain", "gpu_model"),
    log:
        "logs/{task}/pretrain.log",
    benchmark:
        "benchmarks/{task}/pretrain.tsv"
    conda:
        conda_env
    script:
        "../scripts/pretrain.py"
