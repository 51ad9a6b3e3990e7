"""Write PixArt's T5 text embedding of a prompt (the empty prompt by default: the null text)
to a file for ``PixArtBackbone(text=dict(type='file', path=...))``, once, where T5 is
available (the backbone never loads T5).

    python tools/write_t5_embeddings.py path/to/PixArt-XL-2-512x512 null_t5.pt
    python tools/write_t5_embeddings.py path/to/PixArt-Sigma-XL-2-1024-MS sigma.pt \
        --max-length 300 --prompt 'a photo'

The folder needs ``tokenizer/`` and ``text_encoder/`` (T5-XXL, about 19 GB in fp32); the file
holds ``prompt_embeds`` ``(L, 4096)`` and ``prompt_attention_mask`` ``(L,)``, L = 120 for
PixArt-α and 300 for PixArt-Σ.
"""
import argparse

from safetensors.torch import save_file


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder', help='local folder with tokenizer/ and text_encoder/')
    parser.add_argument('out', help='output file (.safetensors, or .pt)')
    parser.add_argument('--prompt', default='', help="the text (default '': the null text)")
    parser.add_argument('--max-length', type=int, default=120,
                        help='padded token length: 120 (PixArt-α) or 300 (PixArt-Σ)')
    args = parser.parse_args(argv)
    from mmdiffssl.models.backbones.pixart_backbone import encode_t5_prompt
    embedding = encode_t5_prompt(args.folder, args.prompt, args.max_length)
    if args.out.endswith('.safetensors'):
        save_file({k: v.contiguous() for k, v in embedding.items()}, args.out)
    else:
        import torch
        torch.save(embedding, args.out)
    print(f"wrote {args.out}: prompt {args.prompt!r}, prompt_embeds "
          f"{tuple(embedding['prompt_embeds'].shape)}, "
          f"{int(embedding['prompt_attention_mask'].sum())} unmasked tokens")


if __name__ == '__main__':
    main()
