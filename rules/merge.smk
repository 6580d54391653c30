# Soups: the experts combined with the first merge method (kind soup), and with
# each further method of merge.method (its own kind, one curve each on the
# front). Merging streams tensor by tensor (rewarded_soups.merging); with
# merge.store: recipe a soup directory holds only its recipe.


rule soup:
    input:
        base="results/{task}/pretrain/model",
        experts=soup_experts,
        fishers=fisher_inputs(None),
        grid=soup_grid_input,
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


# Every soup of the same experts in one pass over them (merge.one_pass, for the methods that support
# it): each expert tensor is read once, each soup written into soup-grids/<experts>/<mix>, which its
# soup job then moves into place. A grid job, not one job with every soup as output: each soup keeps
# its own job and staleness (adding a λ reruns no existing soup nor what was computed from it).
rule soup_grid:
    input:
        base="results/{task}/pretrain/model",
        experts=grid_experts,
    output:
        directory("results/{task}/soup-grids/{members}"),
    log:
        "logs/{task}/soup-grids/{members}.log",
    benchmark:
        "benchmarks/{task}/soup-grids/{members}.tsv"
    conda:
        conda_env
    threads: resource("merge", "threads")
    resources:
        **stage_resources("merge"),
    params:
        kind=task_kind,
        settings=merge_settings(None),
        soups=grid_soups,
        code=task_code("merge_grid", method=None),
    script:
        "../scripts/merge_grid.py"


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
