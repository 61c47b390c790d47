"""Copies of the project's own data and definitions that the pack needs, so a published pack (installed
without the repository around it) carries them. Generated: `python -m policy.generate` copies each file of
`COPIES` from infra/ unchanged; tests/test_policy_pack.py fails when a copy differs from its source.
Edit the source in infra/, never these copies.
"""

# (source under the repository root, copy in this directory)
COPIES = (
    ("infra/secret_patterns.py", "secret_patterns.py"),
    ("infra/instance_types.py", "instance_types.py"),
    ("infra/instance_types.json", "instance_types.json"),
    ("infra/image_tags.py", "image_tags.py"),
)
