"""AWS CDK constructs and stacks; only app.py reads the deployment config."""
