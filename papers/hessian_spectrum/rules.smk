# Sagun et al. (arXiv:1706.04454): per-run Hessian spectrum and pair barrier (derived.json, merged into runs.csv by
# `repro aggregate`), and the README's "spectrum" section (SLQ density, top eigenvalues, segments) from the first
# seed of each variant of this invocation's profile (`--config profile=...`; section.md names it).

# A variant's segment partner is config.yaml's `pair_with` (large_batch: same init; small_batch_independent: an
# independent initialisation through seed_offset).


rule hessian_spectrum_derived:
    input:
        unpack(pair_inputs("hessian_spectrum")),
    output:
        derived=f"{RUNS}/hessian_spectrum/{{profile}}/{{variant}}/seed{{seed}}/derived.json",
    log:
        f"{RUNS}/logs/hessian_spectrum/derived/{{profile}}/{{variant}}/seed{{seed}}.log",
    params:
        run_dir=lambda w, input: os.path.dirname(input.final),
        partner=partner_arg,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=run_resource("gpu"),
    shell:
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.hessian_spectrum.analysis derived'
        " --run-dir {params.run_dir} {params.partner} --profile {wildcards.profile} --out {output.derived}"
        " > {log} 2>&1"


# The section reads each run's derived.json (eigenvalues, SLQ quadrature, segment) and meta.json: no model, no
# Hessian products, so one core, little memory and no GPU. Both section rules below run this command.
HESSIAN_SPECTRUM_SECTION = (
    'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.hessian_spectrum.analysis section'
    " {params.runs} --profile {params.profile} --out-dir {params.out} > {log} 2>&1"
)


# --run VARIANT=RUN_DIR for each input (the first seed of each variant)
HESSIAN_SPECTRUM_SECTION_RUNS = lambda w, input: " ".join(f"--run {k}={os.path.dirname(v)}" for k, v in input.items())


rule hessian_spectrum_section:
    input:
        unpack(profile_run_files("hessian_spectrum", first_seed=True)),
    output:
        section=f"{RESULTS}/hessian_spectrum/spectrum/section.md",
    log:
        f"{RUNS}/logs/hessian_spectrum/spectrum.log",
    params:
        runs=HESSIAN_SPECTRUM_SECTION_RUNS,
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
        HESSIAN_SPECTRUM_SECTION


# A profile's own spectrum section, for a README marker `<profile>_spectrum` (e.g. cpu_width_matched_spectrum: the
# density and top eigenvalues per width), built only when the workflow runs that profile (workflows/common.smk).
rule hessian_spectrum_profile_section:
    input:
        unpack(profile_run_files("hessian_spectrum", first_seed=True)),
    output:
        section=f"{RESULTS}/hessian_spectrum/{{profile}}_spectrum/section.md",
    log:
        f"{RUNS}/logs/hessian_spectrum/{{profile}}_spectrum.log",
    params:
        runs=HESSIAN_SPECTRUM_SECTION_RUNS,
        profile=lambda w: w.profile,
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        HESSIAN_SPECTRUM_SECTION
