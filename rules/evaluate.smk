# Generation is per model. Scoring is per model and score group
# (rewarded_soups.plan.score_groups): a reward that runs a model (a reward
# model, perplexity) alone, so that changing it rescores it only; the
# rule-based scorers of a model together in one job.


rule generate:
    input:
        base="results/{task}/pretrain/model",
        model=model_checkpoint,
        local=local_inputs("generate"),
    output:
        directory("results/{task}/samples/{model}"),
    log:
        "logs/{task}/generate/{model}.log",
    benchmark:
        "benchmarks/{task}/generate/{model}.tsv"
    conda:
        conda_env
    threads: resource("evaluate", "threads")
    resources:
        **stage_resources("evaluate"),
    params:
        kind=task_kind,
        settings=settings("generate"),
        seed=SEED,
        code=task_code("generate"),
    script:
        "../scripts/generate.py"


rule score:
    input:
        base="results/{task}/pretrain/model",
        samples="results/{task}/samples/{model}",
        local=local_inputs("score"),
    output:
        "results/{task}/scores/{model}/{scorers}.json",
    log:
        "logs/{task}/score/{model}/{scorers}.log",
    benchmark:
        "benchmarks/{task}/score/{model}/{scorers}.tsv"
    conda:
        conda_env
    threads: resource("evaluate", "threads")
    resources:
        **stage_resources("evaluate", gpu=score_gpu),
    params:
        kind=task_kind,
        rewards=lambda w: {
            r: plan.canonical(plan.scorers(TASKS[w.task])[r]) for r in plan.score_groups(TASKS[w.task])[w.scorers]
        },
        model_kind=lambda w: model_entry(w).kind,
        weights=lambda w: model_entry(w).weights,
        code=task_code("score"),
    script:
        "../scripts/score.py"


rule scores_table:
    input:
        score_files,
    output:
        scores="results/{task}/scores.csv",
        per_sample="results/{task}/scores_per_sample.csv.gz",
    log:
        "logs/{task}/scores_table.log",
    benchmark:
        "benchmarks/{task}/scores_table.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        code=package_code("rewarded_soups.scores:read_score_files", "rewarded_soups.scores:read_per_sample"),
    script:
        "../scripts/scores_table.py"
