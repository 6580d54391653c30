# Experts (one reward each) and the MORL baseline (a μ-weighted reward) are
# one rule: only the reward weights differ, as the method requires.
rule expert:
    input:
        base="results/{task}/pretrain/model",
        local=local_inputs("finetune"),
    output:
        directory("results/{task}/experts/{reward}"),
    params:
        kind=task_kind,
        settings=settings("finetune"),
        rewards=lambda w: {w.reward: plan.canonical(TASKS[w.task]["rewards"][w.reward])},
        weights=lambda w: {w.reward: 1.0},
        seed=task_seed,
        data_seed=SEED,
        code=task_code("finetune"),
    threads: resource("finetune", "threads")
    # Training before evaluation when both are ready: the many short soup, generate and
    # score jobs then fill both cores at the end, instead of one long expert running
    # alone after them (measured: the locomotion branch started last without it).
    priority: 1
    resources:
        **stage_resources("finetune"),
    log:
        "logs/{task}/experts/{reward}.log",
    benchmark:
        "benchmarks/{task}/experts/{reward}.tsv"
    conda:
        conda_env
    script:
        "../scripts/finetune.py"


use rule expert as morl with:
    output:
        directory("results/{task}/morl/{mix}"),
    params:
        kind=task_kind,
        settings=settings("finetune"),
        rewards=lambda w: {
            r: plan.canonical(TASKS[w.task]["rewards"][r]) for r, m in parse_mix(w.mix).items() if m > 0
        },
        weights=lambda w: {r: m for r, m in parse_mix(w.mix).items() if m > 0},
        seed=task_seed,
        data_seed=SEED,
        code=task_code("finetune"),
    log:
        "logs/{task}/morl/{mix}.log",
    benchmark:
        "benchmarks/{task}/morl/{mix}.tsv"
