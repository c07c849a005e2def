"""Reading, cleaning, label normalisation, deduplication and splitting of financial text."""
