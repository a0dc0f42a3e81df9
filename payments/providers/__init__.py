"""Payment providers behind one interface (payments.providers.base.Provider), one module each,
configured by settings and off unless configured (payments.providers.registry)."""
