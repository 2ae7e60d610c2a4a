// For checks in a browser: how many images loaded (naturalWidth > 0) once the page is loaded.
window.addEventListener("load", function () {
  var images = Array.from(document.images);
  document.body.dataset.imagesLoaded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.images = images.length;
});
