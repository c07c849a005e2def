"""Kind ``hf_encoder``: a Hugging Face encoder with finsent's classification head (``model.py``, ``kind.py``), and
the adapter kind ``none`` that trains and saves all of it (``full.py``)."""
