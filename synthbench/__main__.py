from synthbench.cli import main

main()
