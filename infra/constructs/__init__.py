"""One logical unit of the deployment per module; stacks in ``infra.stacks`` compose them and grant access."""
