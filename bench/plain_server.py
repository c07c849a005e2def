"""The server a user would write in 20 lines: FastAPI + ``transformers.pipeline`` (bench/serve_speed.py's baseline).

    python bench/plain_server.py MODEL_FOLDER PORT
"""

import sys

import uvicorn
from fastapi import FastAPI
from pydantic import BaseModel
from transformers import pipeline

import finsent_cli  # noqa: F401  (registers finsent's model classes with transformers' Auto classes)

pipe = pipeline("text-classification", model=sys.argv[1], device=-1, truncation=True, max_length=128)
app = FastAPI()


class Body(BaseModel):
    texts: list[str]


@app.post("/v1/predict")
def predict(body: Body) -> dict:
    return {"results": pipe(body.texts)}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning")
