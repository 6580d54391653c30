rule soup:
    input:
        base="results/{task}/pretrain/model",
        experts=soup_experts,
    output:
        directory("results/{task}/soups/{mix}"),
    params:
        kind=task_kind,
        settings=settings("merge"),
        weights=lambda w: [m for m in parse_mix(w.mix).values() if m > 0],
    log:
        "logs/{task}/soups/{mix}.log",
    benchmark:
        "benchmarks/{task}/soups/{mix}.tsv"
    conda:
        conda_env
    script:
        "../scripts/merge.py"
