from nnmanifold.cli import main

main()
