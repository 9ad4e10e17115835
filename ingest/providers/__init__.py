"""Model providers behind one small interface (see base.py): Bedrock, SageMaker, OpenAI-compatible, simulator."""
