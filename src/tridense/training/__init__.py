"""Training and evaluation on Lightning: config, data module, LightningModule, callbacks, the run."""
