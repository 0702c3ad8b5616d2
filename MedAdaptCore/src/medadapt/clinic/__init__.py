"""The clinic model: a clinic folder of accepted segmentations and the universal model trained on them, replaced
only by a better one (:mod:`medadapt.clinic.folder`, :mod:`medadapt.clinic.train`)."""
