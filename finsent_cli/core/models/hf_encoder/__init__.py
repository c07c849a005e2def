"""Kind ``hf_encoder``: a Hugging Face encoder with finsent's classification head (``model.py``, ``kind.py``)."""
