# Stage 1: verify or download each paper's data for the profile and build its caches (BPE tokenisers).


rule prepare_data:
    output:
        f"{RUNS}/{{paper}}/{{profile}}/data.json",
    log:
        f"{RUNS}/logs/prepare/{{paper}}/{{profile}}.log",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
    shell:
        "repro prepare {wildcards.paper} --profile {wildcards.profile} --out {output} > {log} 2>&1"
