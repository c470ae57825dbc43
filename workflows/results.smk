# Stages 3-5: per-paper tables, figures and verdicts → the README's generated sections → results/LEDGER.md.


rule aggregate:
    input:
        unpack(aggregate_inputs),
    output:
        runs=f"{RESULTS}/{{paper}}/{{profile}}/runs.csv",
        summary=report(
            f"{RESULTS}/{{paper}}/{{profile}}/summary.csv",
            caption="report/summary.rst",
            category="{paper}",
            subcategory="{profile}",
        ),
        claims=report(
            f"{RESULTS}/{{paper}}/{{profile}}/claims.csv",
            caption="report/claims.rst",
            category="{paper}",
            subcategory="{profile}",
        ),
        table=report(
            f"{RESULTS}/{{paper}}/{{profile}}/table.md",
            caption="report/table.rst",
            category="{paper}",
            subcategory="{profile}",
        ),
        claims_fig=report(
            f"{RESULTS}/{{paper}}/{{profile}}/claims.png",
            caption="report/claims_fig.rst",
            category="{paper}",
            subcategory="{profile}",
        ),
        curves_fig=report(
            f"{RESULTS}/{{paper}}/{{profile}}/curves.png",
            caption="report/curves.rst",
            category="{paper}",
            subcategory="{profile}",
        ),
        # every run's meta/final/metrics text, committed, so another machine can extend the profile (reuse_runs)
        records=f"{RESULTS}/{{paper}}/{{profile}}/run_records.jsonl.gz",
    log:
        f"{RUNS}/logs/aggregate/{{paper}}/{{profile}}.log",
    params:
        runs=RUNS,
        out=lambda w, output: os.path.dirname(output.claims),
        # re-aggregates when the paper's claims or the profile's description change
        spec=claims_spec,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
        gpu=0,
    shell:
        "repro aggregate {wildcards.paper} --profile {wildcards.profile} --runs-dir {params.runs}"
        " --out-dir {params.out} > {log} 2>&1"


rule readme:
    input:
        unpack(readme_inputs),
    output:
        f"{RESULTS}/{{paper}}/{{profile}}/readme_sections.md",
    log:
        f"{RUNS}/logs/readme/{{paper}}/{{profile}}.log",
    params:
        # results/<paper>/<profile>/readme_sections.md → results/
        results=lambda w, output: Path(output[0]).parents[2],
        readme=lambda w: PAPERS_DIR / w.paper / "README.md",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
        gpu=0,
    shell:
        "repro readme {wildcards.paper} --results-dir {params.results}"
        " --readme {params.readme} --out {output} > {log} 2>&1"


rule ledger:
    input:
        ledger_inputs,
    output:
        report(f"{RESULTS}/LEDGER.md", caption="report/ledger.rst", category="Ledger"),
    log:
        f"{RUNS}/logs/ledger.log",
    params:
        results=lambda w, output: Path(output[0]).parent,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
        gpu=0,
    shell:
        "repro ledger --results-dir {params.results} --out {output} > {log} 2>&1"


rule cluster:
    input:
        cluster_inputs,
    output:
        f"{RESULTS}/{{cluster}}/{{profile}}/cluster.md",
    log:
        f"{RUNS}/logs/cluster/{{cluster}}/{{profile}}.log",
    params:
        results=lambda w, output: Path(output[0]).parents[2],
        out=lambda w, output: os.path.dirname(output[0]),
        spec=cluster_spec,
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
        gpu=0,
    shell:
        "repro cluster {wildcards.cluster} --profile {wildcards.profile} --results-dir {params.results}"
        " --out-dir {params.out} > {log} 2>&1"
