# repro: every paper's key experiment, from data to the tables in its README and results/LEDGER.md.
#   snakemake -c2 --config profile=tiny            # everything, tiny profile
#   snakemake -n                                    # the plan
#   snakemake --report report.html                  # tables and figures in one HTML report
# See README.md, "Running the reproductions". Rules live in workflows/*.smk; a paper's own analysis in papers/<slug>/rules.smk.
import os

from snakemake.utils import min_version

min_version("9.0")


configfile: os.path.join(workflow.basedir, "workflows", "config.yaml")


report: "workflows/report/workflow.rst"


include: "workflows/common.smk"
include: "workflows/data.smk"
include: "workflows/runs.smk"
include: "workflows/results.smk"


for paper_rules in PAPER_RULES:

    include: paper_rules


rule all:
    input:
        all_targets(),
    default_target: True
