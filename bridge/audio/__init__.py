"""Audio plumbing: stateful resampling, voice activity detection and the outbound track."""
