"""`python -m srseg.config`: print the table of every config key (README's "Configuration")."""

from .schema import markdown_table

print(markdown_table())
