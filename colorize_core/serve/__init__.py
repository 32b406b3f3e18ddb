"""``colorize serve``: a local web page and a small HTTP API over the Colorizer (the ``serve`` extra).

upload.py streams a request body into a private temporary folder under the byte and pixel caps of
``colorize photo``; prediction.py runs the network once per photo and re-decodes any temperature
from its cached log-probabilities; cache.py bounds those by bytes and age; model_info.py reads the
model card for the page; app.py wires them into a FastAPI application, and static/ holds the page.
"""
