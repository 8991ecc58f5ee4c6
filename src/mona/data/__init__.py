"""Data layer: read pools and targets, detect row formats, render LM inputs."""

from mona.data.formats import Record, Rejected, Sample, detect_format, to_sample
from mona.data.readers import read_records, read_samples

__all__ = ["Record", "Rejected", "Sample", "detect_format", "read_records", "read_samples", "to_sample"]
