rule pretrain:
    input:
        local=local_inputs("pretrain"),
        shipped=shipped_files,
        replicated=replicated_theta0,
    output:
        model=directory("results/{task}/pretrain/model"),
        metrics="results/{task}/pretrain/metrics.json",
    params:
        kind=task_kind,
        settings=settings("pretrain"),
        seed=SEED,
        theta0=lambda w: TASKS[w.task]["theta0"] or "",
        replicate_of=lambda w: TASKS[w.task].get(plan.REPLICATE_OF) or "",
        code=task_code("pretrain"),
    threads: pretrain_resource("threads")
    # Training first: see rules/finetune.smk.
    priority: 2
    resources:
        **stage_resources("pretrain", gpu=pretrain_resource("gpu")),
    log:
        "logs/{task}/pretrain.log",
    benchmark:
        "benchmarks/{task}/pretrain.tsv"
    conda:
        conda_env
    script:
        "../scripts/pretrain.py"
