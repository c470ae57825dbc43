# Signal propagation at initialization (papers/rezero/signal.py): the singular values of the blocks' input-output
# Jacobian for Post-LN, Pre-LN and ReZero at 1-8x the profile's depth, freshly initialized models only (no run
# needed, minutes on one core). Its section.md fills the README's `<profile>_jacobian` generated section.


rule rezero_jacobian:
    input:
        script=f"{PAPERS_DIR}/rezero/signal.py",
        config=f"{PAPERS_DIR}/rezero/config.yaml",
    output:
        csv=f"{RESULTS}/rezero/{{profile}}_jacobian/results.csv",
        figure=f"{RESULTS}/rezero/{{profile}}_jacobian/jacobian.png",
        section=f"{RESULTS}/rezero/{{profile}}_jacobian/section.md",
    log:
        f"{RUNS}/logs/rezero/{{profile}}_jacobian.log",
    params:
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=0,
    shell:
        'OMP_NUM_THREADS={threads} "$REPRO_PYTHON" -m papers.rezero.signal --profile {wildcards.profile}'
        " --out {params.out} > {log} 2>&1"
