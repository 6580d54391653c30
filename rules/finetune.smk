# Experts (one reward each) and the MORL baseline (a μ-weighted reward) are
# one rule: only the reward weights differ, as the method requires.
rule expert:
    input:
        base="results/{task}/pretrain/model",
        local=local_inputs("finetune"),
    output:
        directory("results/{task}/experts/{reward}"),
    log:
        "logs/{task}/experts/{reward}.log",
    benchmark:
        "benchmarks/{task}/experts/{reward}.tsv"
    # Training before evaluation when both are ready: the many short soup, generate and
    # score jobs then fill both cores at the end, instead of one long expert running
    # alone after them (measured: the locomotion branch started last without it).
    priority: 1
    conda:
        conda_env
    threads: resource("finetune", "threads")
    resources:
        **stage_resources("finetune"),
    params:
        kind=task_kind,
        settings=settings("finetune"),
        rewards=lambda w: {w.reward: plan.canonical(TASKS[w.task]["rewards"][w.reward])},
        weights=lambda w: {w.reward: 1.0},
        seed=task_seed,
        data_seed=SEED,
        code=task_code("finetune"),
    script:
        "../scripts/finetune.py"


use rule expert as morl with:
    output:
        directory("results/{task}/morl/{mix}"),
    log:
        "logs/{task}/morl/{mix}.log",
    benchmark:
        "benchmarks/{task}/morl/{mix}.tsv"
    params:
        kind=task_kind,
        settings=settings("finetune"),
        rewards=lambda w: {r: plan.canonical(TASKS[w.task]["rewards"][r]) for r, m in parse_mix(w.mix).items() if m > 0},
        weights=lambda w: {r: m for r, m in parse_mix(w.mix).items() if m > 0},
        seed=task_seed,
        data_seed=SEED,
        code=task_code("finetune"),
