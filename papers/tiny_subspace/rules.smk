# Gur-Ari et al. (arXiv:1812.04754): per-run gradient fractions in the top-k Hessian eigenspace and in a random k-dim
# subspace over training (derived.json, merged into runs.csv by `repro aggregate`), and the README's "overlap"
# section from every run of this invocation's profile (`--config profile=...`; section.md names it).


rule tiny_subspace_derived:
    input:
        final=f"{RUNS}/tiny_subspace/{{profile}}/{{variant}}/seed{{seed}}/final.json",
    output:
        derived=f"{RUNS}/tiny_subspace/{{profile}}/{{variant}}/seed{{seed}}/derived.json",
    log:
        f"{RUNS}/logs/tiny_subspace/derived/{{profile}}/{{variant}}/seed{{seed}}.log",
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
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.tiny_subspace.analysis derived'
        " --run-dir {params.run_dir} --profile {wildcards.profile} --out {output.derived} > {log} 2>&1"


rule tiny_subspace_overlap:
    input:
        profile_run_files("tiny_subspace", names=("derived.json",)),
    output:
        section=f"{RESULTS}/tiny_subspace/overlap/section.md",
    log:
        f"{RUNS}/logs/tiny_subspace/overlap.log",
    params:
        # runs/tiny_subspace/<profile>/<variant>/seed<S>/derived.json -> --derived <variant>=<path>
        derived=lambda w, input: " ".join(f"--derived {Path(f).parent.parent.name}={f}" for f in input),
        profile=PROFILE,
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        '"$REPRO_PYTHON" -m papers.tiny_subspace.analysis section {params.derived} --profile {params.profile}'
        " --out-dir {params.out} > {log} 2>&1"
