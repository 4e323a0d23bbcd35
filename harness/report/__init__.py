"""The reporting side: modules that read run records (OUT/runs/*.json, OUT/job.json) and write tables,
pages and plots. None of them trains or measures anything (tests/test_structure.py walks the import
graph to keep it so).

    variants.py        the variant rows every study table reads, computed once per job
    cells.py           every table cell formatted once (intervals, the paired test, rates)
    tradeoffs.py       `report`: OUT/tradeoffs.md and .csv, and the job's other tables below
    sweep_table.py     sweep.md and .csv          methods_report.py  methods.md, precision.md
    tasks.py           tasks.md (per category)    sizes.py           LoRA's saving against model size
    recommend.py       the recommendation         plots.py           every plot
    publish.py         results/ and its index     site.py            the results site
    compare.py         machines side by side      benchreport.py     the bench suite's published figures
    seed_split.py      does a study's ranking hold when its seeds are split in two (in methods.md)

Adding a report is one module here that reads the rows, and its command in harness/cli.py.
"""
