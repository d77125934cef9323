require ["include","variables","fileinto"];
global "g";
include :global "setvar";
fileinto "${g}";
