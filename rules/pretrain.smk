rule pretrain:
    input:
        local=local_inputs("pretrain"),
        shipped=shipped_files,
        replicated=replicated_theta0,
    output:
        model=directory("results/{task}/pretrain/model"),
        metrics="results/{task}/pretrain/metrics.json",
    log:
        "logs/{task}/pretrain.log",
    benchmark:
        "benchmarks/{task}/pretrain.tsv"
    # Training first: see rules/finetune.smk.
    priority: 2
    conda:
        conda_env
    threads: pretrain_resource("threads")
    resources:
        **stage_resources("pretrain", gpu=pretrain_resource("gpu")),
    params:
        kind=task_kind,
        settings=settings("pretrain"),
        seed=SEED,
        theta0=lambda w: TASKS[w.task]["theta0"] or "",
        replicate_of=lambda w: TASKS[w.task].get(plan.REPLICATE_OF) or "",
        code=task_code("pretrain"),
    script:
        "../scripts/pretrain.py"
