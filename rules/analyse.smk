# Everything here reads cached scores and samples only: figures and summaries
# regenerate without any training or evaluation. They are quick: local rules
# (Snakefile), never cluster jobs.


rule summary:
    input:
        scores="results/{task}/scores.csv",
        per_sample="results/{task}/scores_per_sample.csv.gz",
        pretrain="results/{task}/pretrain/metrics.json",
        runs=training_dirs,
    output:
        report(
            "results/{task}/summary.json",
            caption="../report/summary.rst",
            category="{task}",
            subcategory="summary",
        ),
    log:
        "logs/{task}/summary.log",
    benchmark:
        "benchmarks/{task}/summary.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        metrics=lambda w: list(TASKS[w.task]["metrics"]),
        reference=lambda w: TASKS[w.task]["analysis"]["reference"],
        pairs=lambda w: plan.front_pairs(TASKS[w.task]),
        preferences=lambda w: plan.preferences(TASKS[w.task]),
        seed=task_seed,
        code=package_code("rewarded_soups.analysis:summarise"),
    script:
        "../scripts/summary.py"


rule figures:
    input:
        scores="results/{task}/scores.csv",
        per_sample="results/{task}/scores_per_sample.csv.gz",
    output:
        front=report(
            "results/{task}/figures/front-{pair}.{fmt}",
            caption="../report/front.rst",
            category="{task}",
            subcategory="Pareto fronts",
            labels={"pair": "{pair}"},
        ),
        curves=report(
            "results/{task}/figures/lambda_curves-{pair}.{fmt}",
            caption="../report/lambda_curves.rst",
            category="{task}",
            subcategory="rewards against λ",
            labels={"pair": "{pair}"},
        ),
    log:
        "logs/{task}/figures_{pair}_{fmt}.log",
    benchmark:
        "benchmarks/{task}/figures_{pair}_{fmt}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        metrics=lambda w: {name: m["kind"] for name, m in sorted(TASKS[w.task]["metrics"].items())},
        pair=lambda w: w.pair.split("-"),
        dpi=lambda w: TASKS[w.task]["plots"]["dpi"],
        seed=task_seed,
        code=package_code("rewarded_soups.plots:plot_front", "rewarded_soups.plots:plot_lambda_curves"),
    script:
        "../scripts/figures.py"


rule advantage:
    input:
        summary="results/{task}/summary.json",
    output:
        report(
            "results/{task}/figures/advantage-{pair}.{fmt}",
            caption="../report/advantage.rst",
            category="{task}",
            subcategory="RS vs MORL (Figure 8)",
            labels={"pair": "{pair}"},
        ),
    log:
        "logs/{task}/advantage_{pair}_{fmt}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        dpi=lambda w: TASKS[w.task]["plots"]["dpi"],
        code=package_code("rewarded_soups.plots:plot_advantage"),
    script:
        "../scripts/advantage.py"


rule samples_table:
    input:
        lambda w: list(sample_dirs(w).values()),
    output:
        report(
            "results/{task}/figures/samples.md",
            caption="../report/samples.rst",
            category="{task}",
            subcategory="samples",
        ),
    log:
        "logs/{task}/samples_table.log",
    benchmark:
        "benchmarks/{task}/samples_table.tsv"
    conda:
        conda_env
    params:
        kind=task_kind,
        labels=lambda w: list(sample_dirs(w)),
        n=lambda w: TASKS[w.task]["plots"]["samples_in_table"],
        code=task_code("samples_table"),
    script:
        "../scripts/samples_table.py"


rule explorer:
    input:
        scores="results/{task}/scores.csv",
        per_sample="results/{task}/scores_per_sample.csv.gz",
        summary="results/{task}/summary.json",
        samples=lambda w: list(sample_dirs(w).values()),
        # The page's HTML and script: an input, so that editing it rebuilds the explorers.
        page=str(Path(workflow.basedir) / "rewarded_soups" / "explorer" / "page.html"),
    output:
        report(
            "results/{task}/explorer.html",
            caption="../report/explorer.rst",
            category="{task}",
            subcategory="explorer",
            labels={"task": "{task}", "view": "front explorer"},
        ),
    log:
        "logs/{task}/explorer.log",
    benchmark:
        "benchmarks/{task}/explorer.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        labels=lambda w: list(sample_dirs(w)),
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        metrics=lambda w: sorted(TASKS[w.task]["metrics"]),
        pairs=lambda w: plan.front_pairs(TASKS[w.task]),
        code=package_code("rewarded_soups.explorer:build"),
    script:
        "../scripts/explorer.py"


rule spider:
    input:
        scores="results/{task}/scores.csv",
    output:
        report(
            "results/{task}/figures/spider.{fmt}",
            caption="../report/spider.rst",
            category="{task}",
            subcategory="spider maps",
        ),
    log:
        "logs/{task}/spider_{fmt}.log",
    conda:
        "../envs/analysis.yaml"
    params:
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        starts=lambda w: TASKS[w.task]["merge"]["subsets_from"],
        dpi=lambda w: TASKS[w.task]["plots"]["dpi"],
        code=package_code("rewarded_soups.plots:plot_spider"),
    script:
        "../scripts/spider.py"


rule qualitative:
    input:
        lambda w: list(qualitative_dirs(w).values()),
    output:
        report(
            directory("results/{task}/figures/qualitative"),
            patterns=["{name}.{ext}"],
            caption="../report/qualitative.rst",
            category="{task}",
            subcategory="qualitative",
        ),
    log:
        "logs/{task}/qualitative.log",
    benchmark:
        "benchmarks/{task}/qualitative.tsv"
    conda:
        conda_env
    params:
        kind=task_kind,
        labels=lambda w: list(qualitative_dirs(w)),
        settings=settings("qualitative"),
        code=task_code("qualitative"),
    script:
        "../scripts/qualitative.py"


# A task replicated over training seeds (config `seeds`): every seed's summary and scores together.
rule seeds:
    input:
        summaries=lambda w: [f"results/{t}/summary.json" for t in seed_tasks(w.task)],
        scores=lambda w: [f"results/{t}/scores.csv" for t in seed_tasks(w.task)],
    output:
        "results/{task}/seeds.json",
    log:
        "logs/{task}/seeds.log",
    benchmark:
        "benchmarks/{task}/seeds.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        seeds=lambda w: [TASKS[t].get(plan.REPLICATE_SEED, SEED) for t in seed_tasks(w.task)],
        code=package_code("rewarded_soups.seeds:aggregate"),
    script:
        "../scripts/seeds.py"


rule seeds_figure:
    input:
        seeds="results/{task}/seeds.json",
        scores=lambda w: [f"results/{t}/scores.csv" for t in seed_tasks(w.task)],
    output:
        report(
            "results/{task}/figures/seeds-{pair}.{fmt}",
            caption="../report/seeds.rst",
            category="{task}",
            subcategory="seeds",
            labels={"pair": "{pair}"},
        ),
    log:
        "logs/{task}/seeds_figure_{pair}_{fmt}.log",
    benchmark:
        "benchmarks/{task}/seeds_figure_{pair}_{fmt}.tsv"
    conda:
        "../envs/analysis.yaml"
    params:
        seeds=lambda w: [TASKS[t].get(plan.REPLICATE_SEED, SEED) for t in seed_tasks(w.task)],
        rewards=lambda w: plan.rewards(TASKS[w.task]),
        pair=lambda w: w.pair.split("-"),
        dpi=lambda w: TASKS[w.task]["plots"]["dpi"],
        code=package_code("rewarded_soups.seeds:plot_seed_fronts", "rewarded_soups.seeds:caption"),
    script:
        "../scripts/seeds_figure.py"
