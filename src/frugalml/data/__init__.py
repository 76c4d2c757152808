"""Datasets: load labelled or unlabelled text from CSV, JSONL, Parquet or a Hugging Face folder."""

from frugalml.data.dataset import Dataset
from frugalml.data.io import load_dataset, load_pool
from frugalml.data.split import stratified_split, validation_split

__all__ = ["Dataset", "load_dataset", "load_pool", "stratified_split", "validation_split"]
