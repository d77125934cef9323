require "fileinto";
discard;
fileinto "Work";
