"""Datasets and splits: read labelled texts from a file, check them, split them without leaks.

    readers.py    one reader per file format (uci, csv, tsv, jsonl): the config's data.format choices
    datasets.py   a file or a named dataset read, checked and hashed into a Dataset
    splits.py     stratified, seeded train / val / test splits that keep repeated texts together

This file imports nothing: the config takes its data.format choices from readers.py, below the
config, while datasets.py and splits.py stand on the config.
"""
