"""Model files in and out: Keras/QKeras/TFLite readers, exports, bounded reads."""
