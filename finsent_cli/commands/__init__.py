"""One module per subcommand: parse options, load the recipe, call core, render."""
