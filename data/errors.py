"""The data layer's error, in a module of its own so that main.py can catch it without loading Lightning."""


class DataFormatError(ValueError):
    """A data file is missing or malformed; the message is one line naming the file and the line."""


def no_such_data_file(path) -> DataFormatError:
    """The error for a data file that does not exist."""
    return DataFormatError(f"{path}: no such data file (`python -m data.build_datasets` rebuilds the bundled "
                           "data/pig_latin_small.txt and data/pig_latin_large.txt)")
