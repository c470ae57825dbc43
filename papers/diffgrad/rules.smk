# The paper's synthetic experiment (papers/diffgrad/synthetic.py): deterministic, one CPU core, seconds; independent
# of the profile. Its section.md fills the README's "synthetic" generated section (shared/results/readme.py).


rule diffgrad_synthetic:
    input:
        script=f"{PAPERS_DIR}/diffgrad/synthetic.py",
    output:
        csv=f"{RESULTS}/diffgrad/synthetic/results.csv",
        figure=f"{RESULTS}/diffgrad/synthetic/trajectories.png",
        section=f"{RESULTS}/diffgrad/synthetic/section.md",
    log:
        f"{RUNS}/logs/diffgrad/synthetic.log",
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
        '"$REPRO_PYTHON" -m papers.diffgrad.synthetic --out {params.out} > {log} 2>&1'
