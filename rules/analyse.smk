# Everything here reads cached scores and samples only: figures and summaries
# regenerate without any training or evaluation.


rule summary:
    input:
        scores="results/{task}/scores.csv",
        pretrain="results/{task}/pretrain/metrics.json",
        runs=training_dirs,
    output:
        "results/{task}/summary.json",
    params:
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        metrics=lambda w: list(TASKS[w.task]["metrics"]),
        reference=lambda w: TASKS[w.task]["analysis"]["reference"],
    log:
        "logs/{task}/summary.log",
    benchmark:
        "benchmarks/{task}/summary.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/summary.py"


rule figures:
    input:
        scores="results/{task}/scores.csv",
    output:
        front="results/{task}/figures/front.{fmt}",
        curves="results/{task}/figures/lambda_curves.{fmt}",
    params:
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        metrics=lambda w: {name: m["kind"] for name, m in sorted(TASKS[w.task]["metrics"].items())},
        axes=lambda w: TASKS[w.task]["analysis"]["axes"],
        dpi=lambda w: TASKS[w.task]["plots"]["dpi"],
    log:
        "logs/{task}/figures_{fmt}.log",
    benchmark:
        "benchmarks/{task}/figures_{fmt}.tsv"
    conda:
        "../envs/analysis.yaml"
    script:
        "../scripts/figures.py"


rule samples_table:
    input:
        lambda w: list(sample_dirs(w).values()),
    output:
        "results/{task}/figures/samples.md",
    params:
        kind=task_kind,
        labels=lambda w: list(sample_dirs(w)),
        n=lambda w: TASKS[w.task]["evaluate"].get("samples_in_table", 4),
    log:
        "logs/{task}/samples_table.log",
    benchmark:
        "benchmarks/{task}/samples_table.tsv"
    conda:
        conda_env
    script:
        "../scripts/samples_table.py"


rule qualitative:
    input:
        lambda w: list(qualitative_dirs(w).values()),
    output:
        directory("results/{task}/figures/qualitative"),
    params:
        kind=task_kind,
        labels=lambda w: list(qualitative_dirs(w)),
        settings=settings("generate"),
    log:
        "logs/{task}/qualitative.log",
    benchmark:
        "benchmarks/{task}/qualitative.tsv"
    conda:
        conda_env
    script:
        "../scripts/qualitative.py"
