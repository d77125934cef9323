require ["include","fileinto"];
include :global "ret";
fileinto "Main";
