# Generation is per model; scoring is per (model, reward), so changing one
# reward's settings rescores that reward only.


rule generate:
    input:
        base="results/{task}/pretrain/model",
        model=model_checkpoint,
        local=local_inputs("generate"),
    output:
        directory("results/{task}/samples/{model}"),
    params:
        kind=task_kind,
        settings=settings("generate"),
        seed=SEED,
        code=task_code("generate"),
    threads: resource("evaluate", "threads")
    resources:
        **stage_resources("evaluate"),
    log:
        "logs/{task}/generate/{model}.log",
    benchmark:
        "benchmarks/{task}/generate/{model}.tsv"
    conda:
        conda_env
    script:
        "../scripts/generate.py"


rule score:
    input:
        base="results/{task}/pretrain/model",
        samples="results/{task}/samples/{model}",
        local=local_inputs("score"),
    output:
        "results/{task}/scores/{model}/{reward}.json",
    params:
        kind=task_kind,
        reward=lambda w: plan.canonical(plan.scorers(TASKS[w.task])[w.reward]),
        model_kind=lambda w: model_entry(w).kind,
        weights=lambda w: model_entry(w).weights,
        code=task_code("score"),
    threads: resource("evaluate", "threads")
    resources:
        **stage_resources("evaluate", gpu=score_gpu),
    log:
        "logs/{task}/score/{model}/{reward}.log",
    benchmark:
        "benchmarks/{task}/score/{model}/{reward}.tsv"
    conda:
        conda_env
    script:
        "../scripts/score.py"


rule scores_table:
    input:
        score_files,
    output:
        "results/{task}/scores.csv",
    params:
        code=package_code("rewarded_soups.scores"),
    log:
        "logs/{task}/scores_table.log",
    benchmark:
        "benchmarks/{task}/scores_table.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/scores_table.py"
