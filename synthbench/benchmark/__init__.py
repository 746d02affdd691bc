"""The fixed machinery every protocol shares: datasets, classifiers, trainer,
seeding, the result store, the sample cache, provenance and the registries."""
