# Soups: the experts combined with the first merge method (kind soup), and with
# each further method of merge.method (its own kind, one curve each on the
# front). Merging streams tensor by tensor (rewarded_soups.merging); with
# merge.store: recipe a soup directory holds only its recipe.


rule soup:
    input:
        base="results/{task}/pretrain/model",
        experts=soup_experts,
        fishers=fisher_inputs(None),
    output:
        directory("results/{task}/soups/{mix}"),
    log:
        "logs/{task}/soups/{mix}.log",
    benchmark:
        "benchmarks/{task}/soups/{mix}.tsv"
    conda:
        conda_env
    threads: resource("merge", "threads")
    resources:
        **stage_resources("merge"),
    params:
        kind=task_kind,
        settings=merge_settings(None),
        weights=mix_weights,
        code=task_code("merge", method=None),
    script:
        "../scripts/merge.py"


use rule soup as merge_method with:
    input:
        base="results/{task}/pretrain/model",
        experts=soup_experts,
        fishers=fisher_inputs("method"),
    output:
        directory("results/{task}/merges/{method}/{mix}"),
    log:
        "logs/{task}/merges/{method}/{mix}.log",
    benchmark:
        "benchmarks/{task}/merges/{method}/{mix}.tsv"
    params:
        kind=task_kind,
        settings=merge_settings("method"),
        weights=mix_weights,
        code=task_code("merge", method="method"),


# Each expert's diagonal Fisher on its own fine-tuning inputs, for merge method
# fisher (tasks that implement `fisher`).
rule fisher:
    input:
        base="results/{task}/pretrain/model",
        expert="results/{task}/experts/{reward}",
    output:
        directory("results/{task}/fisher/{reward}"),
    log:
        "logs/{task}/fisher/{reward}.log",
    benchmark:
        "benchmarks/{task}/fisher/{reward}.tsv"
    conda:
        conda_env
    threads: resource("finetune", "threads")
    resources:
        **stage_resources("finetune"),
    params:
        kind=task_kind,
        settings=settings("fisher"),
        rewards=lambda w: {w.reward: plan.canonical(TASKS[w.task]["rewards"][w.reward])},
        seed=task_seed,
        data_seed=SEED,
        code=task_code("fisher"),
    script:
        "../scripts/fisher.py"


# Baselines of the paper (Figures 5c and 14e; tasks that implement them declare them in
# register_task(baselines=...)): prediction ensembling of two experts, and WiSE, an
# expert interpolated toward θ0 (θ0 is a member of the merge, weight 1 − α).
rule ensemble:
    input:
        experts=soup_experts,
    output:
        directory("results/{task}/ensembles/{mix}"),
    log:
        "logs/{task}/ensembles/{mix}.log",
    conda:
        conda_env
    threads: resource("merge", "threads")
    resources:
        **stage_resources("merge"),
    params:
        weights=mix_weights,
        code=task_code("ensemble"),
    script:
        "../scripts/ensemble.py"


rule wise:
    input:
        base="results/{task}/pretrain/model",
        experts=wise_members,
    output:
        directory("results/{task}/wise/{mix}"),
    log:
        "logs/{task}/wise/{mix}.log",
    benchmark:
        "benchmarks/{task}/wise/{mix}.tsv"
    conda:
        conda_env
    threads: resource("merge", "threads")
    resources:
        **stage_resources("merge"),
    params:
        kind=task_kind,
        settings=merge_settings("linear"),
        weights=wise_weights,
        code=task_code("merge", method="linear"),
    script:
        "../scripts/merge.py"
