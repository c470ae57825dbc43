# Landscaping LMC per-pair analysis (papers/landscaping_lmc/analysis.py). Every run gets derived.json: an A
# variant's run holds its layer-wise / depth-wise barriers and their second-order predictions against the run of
# V_partner with the same seed name; a partner's run holds empty metrics. The README's `tiny_layers` section
# (per-layer table and figure, mean ± std over seeds) is built from one profile's runs:
# results/landscaping_lmc/<profile>_layers/section.md.


rule landscaping_lmc_derived:
    input:
        unpack(pair_inputs("landscaping_lmc")),
    output:
        f"{RUNS}/landscaping_lmc/{{profile}}/{{variant}}/seed{{seed}}/derived.json",
    log:
        f"{RUNS}/logs/landscaping_lmc/derived/{{profile}}/{{variant}}/seed{{seed}}.log",
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
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.landscaping_lmc.analysis derived --run-dir {params.run}'
        " {params.partner} --out {output} > {log} 2>&1"


rule landscaping_lmc_layers_section:
    input:
        profile_run_files("landscaping_lmc"),
    output:
        section=f"{RESULTS}/landscaping_lmc/{{profile}}_layers/section.md",
        figure=f"{RESULTS}/landscaping_lmc/{{profile}}_layers/layers.png",
    log:
        f"{RUNS}/logs/landscaping_lmc/{{profile}}_layers.log",
    params:
        runs_root=lambda w: f"{RUNS}/landscaping_lmc/{w.profile}",
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
        gpu=0,
    shell:
        '"$REPRO_PYTHON" -m papers.landscaping_lmc.analysis section --runs-root {params.runs_root}'
        " --out-dir {params.out} > {log} 2>&1"
