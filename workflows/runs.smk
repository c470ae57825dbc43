# Stage 2: one training run per paper × variant × profile × seed, through the CLI (rerun any job by hand).


rule run:
    input:
        data=f"{RUNS}/{{paper}}/{{profile}}/data.json",
        twin=twin_input,  # a run of the same config as an earlier one of its profile: restored from it
    output:
        # final.json is written last, so its existence means the run finished; meta.json, metrics.jsonl and
        # checkpoint.pt are not declared, so Snakemake keeps them when it reruns a killed job, which --resume
        # then continues from the checkpoint (the trainer ignores a checkpoint of a different config).
        final=f"{RUNS}/{{paper}}/{{profile}}/{{variant}}/seed{{seed}}/final.json",
    log:
        f"{RUNS}/logs/run/{{paper}}/{{profile}}/{{variant}}/seed{{seed}}.log",
    params:
        out=lambda w, output: os.path.dirname(output.final),
        device=DEVICE,
        # reruns exactly the jobs whose resolved config changed (Snakemake's params rerun trigger)
        config_hash=lambda w: run_config_hash(w.paper, w.variant, w.profile, w.seed),
        restore=restore_arg,
    conda:
        ENV
    threads: run_threads
    resources:
        mem_mb=run_resource("mem_mb"),
        runtime=run_resource("runtime"),
        gpu=run_resource("gpu"),
    shell:
        "repro run {wildcards.paper} --variant {wildcards.variant} --profile {wildcards.profile}"
        " --seed {wildcards.seed} --out {params.out} --resume --threads {threads} {params.device} {params.restore}"
        " > {log} 2>&1"
