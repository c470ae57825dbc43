# Li et al. (arXiv:1712.09913): per-run sharpness (derived.json, merged into runs.csv by `repro aggregate`) and the
# README's "surfaces" section (1-D/2-D filter-normalised plots of the first seed of each variant).
# The section is built from the runs of the profile of this invocation (`--config profile=...`), so a smoke or tiny
# invocation adds no runs of another profile to the plan; section.md names the profile it was made from.


rule visualizing_loss_landscape_derived:
    input:
        final=f"{RUNS}/visualizing_loss_landscape/{{profile}}/{{variant}}/seed{{seed}}/final.json",
    output:
        derived=f"{RUNS}/visualizing_loss_landscape/{{profile}}/{{variant}}/seed{{seed}}/derived.json",
    log:
        f"{RUNS}/logs/visualizing_loss_landscape/derived/{{profile}}/{{variant}}/seed{{seed}}.log",
    params:
        run_dir=lambda w, input: os.path.dirname(input.final),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=run_resource("gpu"),
    shell:
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.visualizing_loss_landscape.analysis derived'
        " --run-dir {params.run_dir} --profile {wildcards.profile} --out {output.derived} > {log} 2>&1"


rule visualizing_loss_landscape_surfaces:
    input:
        unpack(profile_run_files("visualizing_loss_landscape", first_seed=True)),
    output:
        section=f"{RESULTS}/visualizing_loss_landscape/surfaces/section.md",
    log:
        f"{RUNS}/logs/visualizing_loss_landscape/surfaces.log",
    params:
        runs=lambda w, input: " ".join(f"--run {k}={os.path.dirname(v)}" for k, v in input.items()),
        profile=PROFILE,
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=lambda w: profile_resources(PROFILE)["gpu"],
    shell:
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.visualizing_loss_landscape.analysis section'
        " {params.runs} --profile {params.profile} --out-dir {params.out} > {log} 2>&1"
