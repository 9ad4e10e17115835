"""What people look at: QuickSight definitions, the local HTML dashboard, the FOCUS export, notebooks."""
