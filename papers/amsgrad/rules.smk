# The paper's synthetic experiment (papers/amsgrad/synthetic.py): deterministic, one CPU core, seconds; independent
# of the profile. Its section.md fills the README's "synthetic" generated section (shared/results/readme.py).


rule amsgrad_synthetic:
    input:
        script=f"{PAPERS_DIR}/amsgrad/synthetic.py",
    output:
        csv=f"{RESULTS}/amsgrad/synthetic/results.csv",
        figure=f"{RESULTS}/amsgrad/synthetic/trajectories.png",
        section=f"{RESULTS}/amsgrad/synthetic/section.md",
    log:
        f"{RUNS}/logs/amsgrad/synthetic.log",
    params:
        out=lambda w, output: os.path.dirname(output.section),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
        gpu=0,
    shell:
        '"$REPRO_PYTHON" -m papers.amsgrad.synthetic --out {params.out} > {log} 2>&1'
