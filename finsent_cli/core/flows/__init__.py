"""Recipes as code, read top to bottom (after torchtune's recipes): each command's flow, one module each."""
