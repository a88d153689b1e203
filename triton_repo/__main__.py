from triton_repo.cli import main

main()
