"""Tiny randomly initialised speech encoders, saved as Hugging Face folders
(config, weights, feature extractor) for the `ssl` stage's tests and bench."""
from __future__ import annotations

from pathlib import Path

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)


def tiny_encoder(folder, kind="wav2vec2", seed=0, **options):
    """Write a random `kind` (wav2vec2, hubert, data2vec-audio, wavlm, whisper) model into `folder`; returns its path.
    `options` override the tiny config (e.g. feat_extract_norm="layer")."""
    import torch
    import transformers as tf
    torch.manual_seed(seed)
    folder = Path(folder)
    if kind == "whisper":
        config = tf.WhisperConfig(d_model=32, encoder_layers=2, decoder_layers=1, encoder_attention_heads=2,
                                  decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                  num_mel_bins=80, vocab_size=64, max_target_positions=16, pad_token_id=0,
                                  bos_token_id=1, eos_token_id=2, decoder_start_token_id=1,
                                  begin_suppress_tokens=None, suppress_tokens=None, **options)
        model, fe = tf.WhisperModel(config), tf.WhisperFeatureExtractor(feature_size=80)
    else:
        config_cls, model_cls = {"wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model),
                                 "hubert": (tf.HubertConfig, tf.HubertModel),
                                 "data2vec-audio": (tf.Data2VecAudioConfig, tf.Data2VecAudioModel),
                                 "wavlm": (tf.WavLMConfig, tf.WavLMModel)}[kind]
        config = config_cls(**{**TINY, **options})
        model = model_cls(config)
        # As the published models: a mask only where the CNN has no norm across time.
        local = getattr(config, "feat_extract_norm", "layer") == "layer"
        fe = tf.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=local)
    model.eval().save_pretrained(folder)
    fe.save_pretrained(folder)
    return folder
