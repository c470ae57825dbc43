# Git Re-Basin per-pair analysis (papers/git_rebasin/analysis.py). Every run gets derived.json: an A variant's run
# holds its barriers (naive and weight-matched) against the run of V_partner with the same seed name; a partner's
# run holds empty metrics. `repro aggregate` merges them into the run rows, so the width claims can name them.
# The README's `tiny_barriers` section (naive vs permuted, mean ± std over seeds) is built from one profile's runs:
# results/git_rebasin/<profile>_barriers/section.md.


rule git_rebasin_derived:
    input:
        unpack(pair_inputs("git_rebasin")),
    output:
        f"{RUNS}/git_rebasin/{{profile}}/{{variant}}/seed{{seed}}/derived.json",
    log:
        f"{RUNS}/logs/git_rebasin/derived/{{profile}}/{{variant}}/seed{{seed}}.log",
    params:
        run=lambda w, input: os.path.dirname(input.final),
        partner=partner_arg,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
    shell:
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.git_rebasin.analysis derived --run-dir {params.run}'
        " {params.partner} --out {output} > {log} 2>&1"


rule git_rebasin_barriers_section:
    input:
        profile_run_files("git_rebasin"),
    output:
        section=f"{RESULTS}/git_rebasin/{{profile}}_barriers/section.md",
        curves=f"{RESULTS}/git_rebasin/{{profile}}_barriers/curves.png",
        table=f"{RESULTS}/git_rebasin/{{profile}}_barriers/barriers.json",
    log:
        f"{RUNS}/logs/git_rebasin/{{profile}}_barriers.log",
    params:
        runs_root=lambda w: f"{RUNS}/git_rebasin/{w.profile}",
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
        gpu=0,
    shell:
        '"$REPRO_PYTHON" -m papers.git_rebasin.analysis section --runs-root {params.runs_root}'
        " --out-dir {params.out} > {log} 2>&1"
